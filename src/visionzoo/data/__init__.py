"""Data sets as in-memory uint8 tensors (or streamed folders), splits, batching, augmentation."""
