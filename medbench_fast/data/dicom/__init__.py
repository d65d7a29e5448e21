"""DICOM datasets: series sorted and paired by UIDs, DICOM-SEG and RTSTRUCT references and
predictions placed on their series' grid, predictions written back as DICOM-SEG.

pydicom and highdicom are imported only when a DICOM dataset is read.
"""
