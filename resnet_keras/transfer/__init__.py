"""Transfer learning (Question 3): a frozen base under a new head (`models`), the options
a transfer run adds (`config`), the run (`task`) and its report."""
