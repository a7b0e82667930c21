"""What a run leaves on disk, in one place: the result record (result.json), the predictions files
(predictions.npz + predictions.jsonl) and the per-family layout of the arrays inside them. Everything that reads
or writes these files (runner, floors, suite, ablate, reporting) imports them from here; nothing here imports
the layers above."""
