"""LeNet-1/4/5 (LeCun et al. 1998) and the 1989 zip-code network (placeholder)."""
