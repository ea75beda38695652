"""Help for a student who runs notebook cells out of order: which section defines a missing name.

Each notebook's imports cell calls ``explain_missing_names({section: names, ...})``; from then on a
``NameError`` for one of those names ends with "run the section ... first" (see "Set-up").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

RUN_ABOVE = "Run > Run All Above Selected Cell"


def _sections_by_name(sections: Mapping[str, str | Iterable[str]]) -> dict[str, str]:
    by_name = {}
    for section, names in sections.items():
        for name in [names] if isinstance(names, str) else names:
            by_name[name] = section
    return by_name


def missing_name(error: BaseException) -> str | None:
    """The name a ``NameError`` complains about (``None`` for any other error)."""
    if not isinstance(error, NameError):
        return None
    if getattr(error, "name", None):
        return error.name
    match = re.search(r"name '([^']+)' is not defined", str(error))
    return match.group(1) if match else None


def missing_name_message(name: str | None, sections: Mapping[str, str | Iterable[str]]) -> str:
    """What to tell a student whose cell used ``name`` before the cell defining it ran.

    ``sections`` maps a section title of the notebook to the names its cells define.
    """
    section = _sections_by_name(sections).get(name) if name else None
    if section is None:
        return (
            f"`{name}` is not defined. If an earlier cell defines it, run the cells above this one first "
            f"({RUN_ABOVE}); otherwise check the spelling."
        )
    return (
        f"`{name}` is defined in the section '{section}', which has not run yet in this session: "
        f"run that section's cells first (or {RUN_ABOVE}), then this cell again."
    )


def explain_missing_names(sections: Mapping[str, str | Iterable[str]], shell=None) -> bool:
    """Make IPython follow every ``NameError`` with ``missing_name_message``.

    ``shell`` defaults to the running IPython; outside IPython (a script, a test) nothing happens and
    the function returns False. Returns True when the handler is registered.
    """
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - IPython ships with Jupyter
            return False
        shell = get_ipython()
    if shell is None:
        return False
    sections = {section: tuple([names] if isinstance(names, str) else names) for section, names in sections.items()}

    def explain(shell, etype, value, tb, tb_offset=None):
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)  # the usual red traceback first
        print(missing_name_message(missing_name(value), sections))

    shell.set_custom_exc((NameError,), explain)
    return True
