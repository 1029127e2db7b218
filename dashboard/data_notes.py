"""Warnings about the user's data (skipped files, dropped or unmatched masks), shown on the
page that uses that data instead of only in the server's terminal.

core warns with BadImageWarning / MaskWarning, each naming the file and what to do, and only
the first time a folder is read in a process (its listings and decoded images are cached). So
one process-wide hook keeps every such message it sees (`install`), and a page shows those
whose file lies under the data folder it used in this rerun (`use`, then `show_used`). The
terminal still gets the warning as before.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterable
from pathlib import Path

import streamlit as st

KEY_USED = "rs_data_used"  # the data folders this rerun's page read, in order
KEY_SLOT = "rs_data_notes_slot"  # the container under the page's header that the notes go into
SHOWN_INLINE = 3  # more notes than this go into a collapsed expander
MAX_NOTES = 5000  # messages kept per process (oldest dropped)

_NOTES: dict[str, None] = {}  # ordered set of messages
_LOCK = threading.Lock()


def _data_warning_types() -> tuple[type[Warning], ...]:
    from core.data.images import BadImageWarning

    return (BadImageWarning,)  # MaskWarning derives from it


def record(message: str) -> None:
    with _LOCK:
        _NOTES[message] = None
        while len(_NOTES) > MAX_NOTES:
            del _NOTES[next(iter(_NOTES))]


def install() -> None:
    """Wraps warnings.showwarning (again, when something replaced it since): data warnings
    are recorded, then shown as before. Called at the start of every rerun."""
    with _LOCK:
        original = warnings.showwarning
        if getattr(original, "records_data_notes", False):
            return
        kinds = _data_warning_types()

        def showwarning(message, category, filename, lineno, file=None, line=None):
            if isinstance(category, type) and issubclass(category, kinds):
                record(str(message))
            return original(message, category, filename, lineno, file, line)

        showwarning.records_data_notes = True
        warnings.showwarning = showwarning


def notes_for(folder: Path | str) -> list[str]:
    """The recorded messages that name a file under `folder` (as given or resolved)."""
    folder = Path(folder).expanduser()
    prefixes = {str(folder).rstrip("/") + "/"}
    try:
        prefixes.add(str(folder.resolve()).rstrip("/") + "/")
    except OSError:
        pass
    with _LOCK:
        messages = list(_NOTES)
    return [m for m in messages if any(p in m for p in prefixes)]


def begin_rerun() -> None:
    st.session_state[KEY_USED] = []
    st.session_state[KEY_SLOT] = None


def reserve_slot() -> None:
    """A place under the page's header for the notes, which are known only once the page has
    read its data (else they go at the page's end)."""
    st.session_state[KEY_SLOT] = st.container()


def use(folder: Path | str) -> None:
    """Marks `folder` as data this page reads: its notes are shown under the page."""
    used = st.session_state.setdefault(KEY_USED, [])
    if str(folder) not in used:
        used.append(str(folder))


def show(folder: Path | str, notes: Iterable[str]) -> None:
    """A few notes as warnings; more as one warning with the list in a collapsed expander."""
    notes = list(notes)
    if not notes:
        return
    if len(notes) <= SHOWN_INLINE:
        for note in notes:
            st.warning(note, icon=":material/report:")
        return
    st.warning(f"{len(notes)} notes about the data in `{folder}`: files skipped or masks not used "
               "(each note names the file and what to do).", icon=":material/report:")
    with st.expander(f"The {len(notes)} notes", expanded=False):
        st.code("\n".join(notes), language=None, wrap_lines=True)


def show_used() -> None:
    """The notes of every data folder the page read in this rerun."""
    slot = st.session_state.get(KEY_SLOT)
    for folder in st.session_state.get(KEY_USED, []):
        notes = notes_for(folder)
        if notes:
            with slot if slot is not None else st.container():
                show(folder, notes)
