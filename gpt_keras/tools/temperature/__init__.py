"""The temperature lab: the lecture's calculator, the model's next-word table, and sampled texts per temperature."""
