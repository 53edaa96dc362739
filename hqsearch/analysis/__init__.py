"""What a finished study shows: the ranked front, reports and plots, comparisons, and export of a design."""
