"""Intel VMX facts (SDM Vol. 3), table-driven and pure: functions of ints and
bytes, no I/O, no pykd. Each table is defined once, here; everything else
imports it."""
