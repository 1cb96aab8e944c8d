"""Stage 7, profiling sessions: timing + ETDump runs of one export on one target, interleaved
SME2 on/off blocks, run folders written atomically."""
