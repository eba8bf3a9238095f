"""Speed, memory and quality benchmarks of det_forget (scripts; see ``benchmarks/README.md``)."""
