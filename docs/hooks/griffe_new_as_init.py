"""Griffe extension for the API reference: a class whose constructor is ``__new__`` alone
(a pyo3 class such as ``ucag.Grid``, typed by its stub ``_core.pyi``) gets an ``__init__``
with the same arguments, so that mkdocstrings' ``merge_init_into_class`` shows its signature
with the class, as it does for Python classes. The stub keeps ``__new__``, which is what the
extension defines at run time (stubtest checks it)."""

from __future__ import annotations

from typing import Any

import griffe


class NewAsInit(griffe.Extension):
    """Give a class with ``__new__`` and no ``__init__`` an ``__init__`` of the same arguments."""

    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        new = cls.members.get("__new__")
        if new is None or "__init__" in cls.members or not isinstance(new, griffe.Function):
            return
        arguments = [parameter for parameter in new.parameters if parameter.name != "cls"]
        self_parameter = griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)
        init = griffe.Function(
            "__init__",
            lineno=new.lineno,
            endlineno=new.endlineno,
            parameters=griffe.Parameters(self_parameter, *arguments),
            returns="None",
        )
        cls.set_member("__init__", init)
