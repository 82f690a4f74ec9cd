"""Lab exercises: broken builds of hv.sys run on the emulated CPU, worksheets,
answer keys and a grader (docs/exercises.md). The table is catalogue.py."""
