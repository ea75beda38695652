"""REPORT.md, the document instructors grade from, built from the runs' metrics.json files.

``python -m labkit report`` (and the last cell of notebook 04) calls ``build_report``. The
student's Discussion sections live between markers and survive every rebuild; nothing else a
student wrote is dropped either. A rebuild refuses, naming the line, when a marker was deleted or
text lies outside the Discussions (text written just under a Discussion's questions is moved inside
its markers instead, and said so), keeps the report it replaces as ``REPORT.md.bak``, removes from
``REPORT_files/`` only the figures it wrote itself (listed in ``REPORT_files/report-manifest.json``),
and writes everything beside the old files first, then swaps them in: a full disk or a failure
leaves the previous report and its figures as they were.

The package's modules, each importing only those above it in this list:

    parts        the report's parts and their questions, the checklist, where figures and the backup go
    tables       the runs read back (metrics.json), the GAN variants' table, numbers as the tables write them
    discussions  what a student wrote (the Discussions) and what a rebuild must keep of the report it replaces
    writing      writing the report and its figures beside the old ones, then swapping them in
    build        ``build_report``: the whole report from the runs

Inside labkit, import from the module (``from .report.build import build_report``): the package's names
below are for notebooks, tests and the command line.
"""

from .build import build_report, run_section
from .discussions import discussion_markers, read_discussions
from .parts import CHECKLIST, PARTS, PLACEHOLDER, Part, backup_path, figures_folder
from .tables import GAN_VARIANTS_FILE, format_value, load_runs, markdown_table, table_cell

__all__ = [
    "CHECKLIST",
    "GAN_VARIANTS_FILE",
    "PARTS",
    "PLACEHOLDER",
    "Part",
    "backup_path",
    "build_report",
    "discussion_markers",
    "figures_folder",
    "format_value",
    "load_runs",
    "markdown_table",
    "read_discussions",
    "run_section",
    "table_cell",
]
