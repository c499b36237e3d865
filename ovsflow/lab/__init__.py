"""The lab: a topology brought to life on one machine (namespaces, private OVS, veths, VMs)."""
