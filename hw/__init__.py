"""Hardware adapters: PyAudio mic and speaker, gpiozero button and LED, simulation.

Adapters decide nothing: they post ``daemon.events`` events to the supervisor
through a thread-safe ``post`` callable, from their own threads, and obey method
calls without blocking the caller. No asyncio here.

==================  ===========================================================
module              what it is
==================  ===========================================================
``mic``             ``Mic``/``MicSettings``: 16 kHz mono ``MicFrame``s, device by
                    name, overflow counted, reopen on loss
``speaker``         ``Speaker``/``SpeakerSettings``: 24 kHz replies → device rate,
                    jitter buffer, flush, tail padding, volume, earcons
``playback``        ``PlaybackQueue``: the speaker's queue logic (shared with sim)
``resample``        ``Resampler``: streaming polyphase Kaiser FIR (numpy)
``pastream``        ``PortAudioHost``: the one PortAudio of mic and speaker,
                    re-initialised to find lost devices; ``StreamKeeper`` per stream
``devices``         list/find PortAudio devices by name; ``voiced devices``
``button``, ``led`` gpiozero Button (own debounce, hold, toggle) / PWMLED|RGBLED
``earcons``         generated press/release/error tones
``sim``             ``--hw sim``: mock pins, WAV mic, WAV speaker, soft button
``gpio``            ``Gpio``: the button and the LED through the configured pin
                    factory, retried while GPIO is missing
``factory``         ``make_hardware("pi" | "sim", ...)``: one bundle per backend
==================  ===========================================================

Wiring a bare button and LED on a breadboard (defaults match the Google AIY
Voice HAT; BCM numbering, physical pin in brackets)::

    part                  from                     to
    push button           GPIO23 (pin 16)          GND (pin 14)   no resistor: internal pull-up
    LED anode (long leg)  GPIO25 (pin 22)          via 330 Ω resistor
    LED cathode (flat)    GND (pin 20)
    RGB LED (optional)    three GPIOs, each via 330 Ω; common cathode to GND;
                          set [led] rgb_pins = r, g, b
"""
