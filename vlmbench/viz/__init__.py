"""Pictures of a model (the paper's section 5.5): attention maps over [CLS] video... [SEP] text... [SEP] and a
2-D projection of the joint token space. Library functions return the data they draw, so tests read it."""
