"""The checks of every student-implemented component, one module per lesson, in the lessons' order.

Every check is ``check_xxx(student_obj, hidden=False)`` and calls the student's code only through
``report.run_student``. In Colab it is a self-check: it probes, then judges, in the student's kernel.
While grading, the kernel only probes (records the answers, ``transcript``) and the grader's worker
judges, replaying the same check against the record. See ``autograder.checks.transcript``.
"""
