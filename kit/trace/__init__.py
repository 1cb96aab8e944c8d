"""Stage 4, reading what a run recorded: ETDump parsing, the program map a trace is read
against, kernel naming from operator names and XNNPACK logs."""
