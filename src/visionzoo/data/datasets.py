from pathlib import Path
def find_fashion_mnist():
    p = Path("/usr/share/datasets/fashion-mnist")
    return p if p.exists() else None
