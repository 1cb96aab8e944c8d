"""Stage 2, where programs run: the device inventory (devices.toml), targets (device x SME2 flag),
capability detection, transports (local, qemu, ssh, adb) and the emulator set-up."""
