"""``voiced demo``: the whole device on a laptop, against the local Live server.

==============  ===============================================================
module          what it is
==============  ===============================================================
``demo``        the sub-command: server, simulated hardware, the run, the report
``script``      the scripted conversation (a supervisor companion)
``trace``       the timeline, the mic tap, the totals
``tools``       the tools and Home Assistant part
``mqttbroker``  a private Mosquitto on a loopback port (also tests and bench)
==============  ===============================================================
"""
