from ucag.cli import main

raise SystemExit(main())
