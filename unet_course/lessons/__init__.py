"""What only the notebooks use: convolution as matrices, the explorers, automatic
differentiation, receptive fields, the course's figures and the exercises' checks."""
