"""ovsflow: compute and program the OpenFlow pipeline of Open vSwitch VTEPs from a topology file."""

__version__ = "0.1.0"
