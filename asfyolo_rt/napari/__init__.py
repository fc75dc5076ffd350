"""The napari plugin (npe2 manifest `napari.yaml` beside this file; install with the `napari` extra).

- `widget.CellsWidget`: the "ASF-YOLO cells" dock widget (model, thresholds, scale, device, Run);
- `segment`: the Qt-free segmentation of a layer's 2-D image or every plane of a stack;
- `io`: reader and writer for the tool's label TIFF + cells.csv;
- `viewer.open_viewer`: what `asfyolo-rt view` opens.

Nothing here imports napari or Qt at package import.
"""
