"""The model's weights as evidence and as edit targets: which matrices sit in attention and MLP
blocks, and what each tensor holds (offloaded, quantized, digested). Below evaluation, edits and
guards alike, which all need the same answer."""
