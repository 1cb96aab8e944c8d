"""Stage 1, model packages: the model spec contract, the registry that discovers and validates
packages (native and Arm-kit), local checkpoints."""
