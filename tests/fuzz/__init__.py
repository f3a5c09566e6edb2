"""Fuzz suite of issue 14: generated bad input, damaged run directories and faults against every subcommand."""
