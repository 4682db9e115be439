"""Fast simulation of spiking networks: event-driven synapses fused with LIF neurons (snn.event_linear)."""
