"""Stage 10, for people and other tools: reports and charts, Perfetto traces, HUD export, Arm-kit
import."""
