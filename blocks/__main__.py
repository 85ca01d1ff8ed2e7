"""`python -m blocks`: register Headwater's blocks (same as `headwater blocks register`)."""

from blocks.registry import register_blocks

if __name__ == "__main__":
    for name in register_blocks():
        print(name)
