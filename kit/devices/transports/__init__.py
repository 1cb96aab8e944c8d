"""Transports: how a runner reaches a device. One small interface, one class per kind."""
