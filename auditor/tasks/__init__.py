"""Work on one annotation task as a whole: its prompts, and machine reference answers made from them."""
