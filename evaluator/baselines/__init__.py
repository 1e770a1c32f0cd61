"""Reference EPLB programs used as anchors by `compare` and `report`."""
