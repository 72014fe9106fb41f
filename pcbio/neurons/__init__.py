"""brian2 equation templates with units: one place for each neuron equation."""
