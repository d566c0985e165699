"""The service shell around the engine: the daemon and its task tree, the backends it
builds from the configuration, the instance identity, the clock, systemd notification,
the operations listener, logging and the state directory."""
