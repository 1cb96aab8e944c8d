"""Stage 5, model package -> ExecuTorch program: .pte + ETRecord + program map + inputs, with a
numerical check run by the native runner."""
