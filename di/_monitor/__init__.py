"""The monitor's parts: what it publishes (:mod:`.snapshot`), its groups resolved
(:mod:`.groups`), and the per-service policies of its rounds (:mod:`.policies`).

:class:`di.monitor.HealthMonitor` holds the state and the running; these compute.
"""
