"""The SpiNNaker backend: sPyNNaker-style machine data for a graph quantized by quantize-spinnaker,
the multicast routing tables that join its cores, and a PyNN script for users with a real board."""
