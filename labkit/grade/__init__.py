"""``python -m labkit grade SUBMISSIONS_DIR --out DIR``: grade a whole class from their submissions (a package).

Every archive (or unpacked folder) in SUBMISSIONS_DIR is one student, named by the file. The grader
unpacks each safely, checks its manifest, compares REPORT.md with the metrics.json files it was built
from, re-evaluates the submitted weights on the instructor's copy of the test split, looks for
impossible values, smoke runs, other settings and copied discussions, and writes ``gradebook.csv``
(one row per student, ``flags`` empty when nothing is wrong) and ``class_report.md`` with figures.
Submissions are untrusted: nothing in them is executed, checkpoints are read with
``weights_only=True``, and nothing is written outside ``DIR`` but the test data itself, fetched into
the data root where it is missing (the digit classifier is kept in ``DIR/.cache``). The grader never
deletes or changes its inputs: an ``--out`` that is, holds or lies inside the submissions or the
reference is refused, and of ``DIR`` it removes only what an earlier grade unpacked there (listed in
``WORK_RECORD``). ``docs/instructors.md`` is the guide.

    grading     ``grade`` and one student's row; the numbers no honest run produces, the ``Evaluator`` that
                runs the submitted weights again, copied Discussions, the instructor's reference runs
    flags       REPORT.md's numbers against its metrics.json, each run's settings against the course's
    drawn       what a generative model draws, judged again as its recipe judged it
    out_folder  the ``--out`` folder: refused where it touches an input; the record of what was unpacked

``grading`` imports the other three, which need nothing above the report and the metrics. Inside labkit,
import from the modules (``from .grade.grading import grade``): this package sits a floor above them.
"""

from .drawn import SAMPLES_JUDGED
from .flags import check_course, report_flags, report_tables, settings_flags
from .grading import (
    GRADED_NUMBERS,
    GRADED_SUFFIXES,
    REEVALUATED,
    SIMILARITY,
    TOLERANCE,
    Evaluator,
    discussion_flags,
    grade,
    grade_student,
    plausibility_flags,
    reference_runs,
)
from .out_folder import CACHE, UNPACKED, WORK_RECORD, check_out, record_unpacked, unpacked_earlier

__all__ = [
    "CACHE",
    "GRADED_NUMBERS",
    "GRADED_SUFFIXES",
    "REEVALUATED",
    "SAMPLES_JUDGED",
    "SIMILARITY",
    "TOLERANCE",
    "UNPACKED",
    "WORK_RECORD",
    "Evaluator",
    "check_course",
    "check_out",
    "discussion_flags",
    "grade",
    "grade_student",
    "plausibility_flags",
    "record_unpacked",
    "reference_runs",
    "report_flags",
    "report_tables",
    "settings_flags",
    "unpacked_earlier",
]
