"""The HTTP seam: the only package that imports requests or urllib3."""
