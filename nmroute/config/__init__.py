"""Pipeline configuration: YAML with locations, parameter specs, graph checks."""
