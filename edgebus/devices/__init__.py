"""Device support shared by devicetwin, devicecontroller, the mappers and the CLI:
the KubeEdge ``$hw`` message formats, Modbus decoding, the mapper runtime and simulators."""
