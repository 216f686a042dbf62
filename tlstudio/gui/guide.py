"""Help › Guide: a short offline guide — what each page is for, and how to read the results."""
from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout

GUIDE_HTML = """
<h2>Transfer Learning Studio: a short guide</h2>
<p>The studio teaches a network that already knows everyday photos (it was <i>pretrained</i> on
ImageNet, 1.3 million photos) to tell <b>your</b> classes apart, from your own images, on this
computer. Nothing is sent anywhere and nothing is downloaded. Work through the pages from left
to right; the status bar at the bottom says which project is open and whether training runs on
the processor (CPU) or a graphics card (GPU).</p>

<h3>The pages</h3>
<ol>
<li><b>Data</b>: choose your images (a folder with one sub-folder per class, a table of file names
and labels, an .npz file or DICOM files). Every image is opened and checked; an image that cannot
be used is listed under <i>Skipped</i> with the reason, and the others are still used. The images
are split into <i>training</i> (the network learns from them), <i>validation</i> (to watch progress)
and <i>test</i> (kept aside until the end, for an honest result).</li>
<li><b>Model</b>: the pretrained network to start from. The recommended one is shown first; all
networks on this computer are under <i>All models</i>.</li>
<li><b>Technique</b>: how the network is adapted. The recommended technique for your data is
marked; choose how long to train (quick, standard or thorough: the page says how long each takes
on this computer) and answer whether a mirror image of one of your images shows the same thing.
Every other setting is under <i>Advanced</i>, already set to the recommended values.</li>
<li><b>Train</b>: press <i>Train</i> (F5). The charts show the error (loss: lower is better) and
the validation result after every pass over the images (an <i>epoch</i>). You can pause, stop and
resume; a stopped run keeps its last completed epoch.</li>
<li><b>Evaluate</b>: the results on the test images, which the network never saw while learning.</li>
<li><b>Predict</b>: drop new images or a folder to get the network's answer for each, with a heat
map of where it looked. The results belong to the model of the run chosen at the top.</li>
<li><b>Runs</b>: every training run is kept. Compare two runs, resume one, write its report, or
<i>Export</i> the trained model as a checked package with its model card.</li>
</ol>

<h3>Reading the results</h3>
<ul>
<li><b>Sensitivity</b> of a class: of the test images that truly belong to it, the share the
network recognised. For a "malignant" class: how many cancers were found. A sensitivity of 0.90
means 9 in 10 were found and 1 in 10 was missed.</li>
<li><b>Specificity</b> of a class: of the test images that do <i>not</i> belong to it, the share
the network correctly did not put in it. For "malignant": how many of the others were rightly not
called malignant (few false alarms).</li>
<li><b>Precision</b>: of the images the network put in a class, the share that truly belong
there. <b>F1</b> combines precision and sensitivity in one number.</li>
<li><b>Accuracy</b>: the share of all test images answered correctly. With unequal classes it can
look good while a small class is missed: read <b>balanced accuracy</b> (the mean sensitivity over
the classes) and the per-class table too. The range in brackets is a <b>95% confidence
interval</b>: with a small test set, the true figure can lie anywhere in it.</li>
<li><b>AUC</b> (area under the ROC curve, two classes only): the chance that the network gives a
randomly chosen image of the positive class a higher score than one of the other class. 0.5 is
guessing, 1.0 is perfect; 0.9 is good. The <b>ROC curve</b> needs exactly two classes: the
<i>threshold</i> slider trades sensitivity against specificity.</li>
<li>The <b>confusion matrix</b> counts test images by true class (rows) and answer (columns);
the diagonal holds the correct answers. Click a cell to see exactly those images.</li>
<li>The <b>heat map</b> (Grad-CAM) colours the regions that pushed the network most towards its
answer (red = strongest). Check that they are the regions an expert would look at: a network
that looks at a label, a ruler or the image border has learnt a shortcut.</li>
</ul>
<p>A result is only as good as the test images: they should come from the same kind of patients,
scanners and hospitals as the images the model will meet. The studio is a research tool: a
model made here is not a medical device.</p>

<h3>Where things are kept</h3>
<p>Each run is a folder in the run store (Tools › Settings shows where): its project file, its
curves, its checkpoints and its report. Every run can be repeated from a terminal with the
command the Train page shows (<tt>tlstudio train …</tt>). <tt>tlstudio doctor</tt> checks the
installation and says in plain words what is wrong.</p>
"""


class GuideDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Guide — Transfer Learning Studio")
        self.resize(720, 640)
        v = QVBoxLayout(self)
        self.text = QTextBrowser()
        self.text.setObjectName("guideText")
        self.text.setOpenExternalLinks(False)
        self.text.setHtml(GUIDE_HTML)
        v.addWidget(self.text)
        b = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        b.rejected.connect(self.close)
        v.addWidget(b)
