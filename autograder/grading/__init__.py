"""The instructor's trusted grading pipeline, one module per stage (see ``autograder.grading.run``).

- collect (``collect``): uploads read file by file, students and their ids
- repair (``repair``): each notebook checked and repaired before nbgrader
- execute (``execute``, ``worker``, ``sandbox``, ``demos``): a sandbox course per student, kernels under
  bubblewrap; demonstrations skipped
- judge (``judge``, ``reference``, ``judge_side``): test cells decided outside the kernel; the reference and
  the checks' judge side hidden from it
- record (``record``): executed notebooks checked and scored by nbgrader
- report (``report``): manifest, grades.csv, intake.csv

``run`` strings the stages together (``grade``, from a copy of the course's code taken when it starts);
``timing`` records where the time goes (``grade --timings``); ``course`` holds the nbgrader configuration and
``demo_class`` writes a made-up class to try the grader on. Nothing here runs a student's code in
the grader's own process; the judge runs in the worker, which never runs it either.
"""

import sys

# jsonschema, which nbformat imports, imports this optional IRI checker at import time, and it builds its parsers
# there: about 1 s of CPU in every grader process and every student's worker. Nothing the grader runs checks an IRI
# format: nbformat validates without a format checker and its schemas ask for none (tests/grading/test_timing.py),
# and a missing checker could only make a validation more lenient. A None in sys.modules makes
# `import rfc3987_syntax` raise ImportError, which jsonschema treats as "not installed".
sys.modules.setdefault("rfc3987_syntax", None)
