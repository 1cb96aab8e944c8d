"""Runners: the native C++ runner (built against an executorch package) and the pybind child."""
