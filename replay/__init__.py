"""pagereplay: replay Linux page-allocator traces through a model of the 6.1 buddy allocator."""

__version__ = "0.1.0"
