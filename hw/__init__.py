"""Hardware adapters: PyAudio mic and speaker, gpiozero button and LED, simulation.

Adapters decide nothing: they post events to the supervisor and obey effects.
"""
