"""What each built-in plugin offers, readable without importing it (and torch with it): the
manifests behind the entry points of the group ``tlstudio.manifests`` (see docs/plugins.md).
`tlstudio plugins` lists a plugin from its manifest; training, the window and every other
command import the plugin itself.  ``tests/test_api.py`` checks that each manifest says what
its plugin offers."""
from tlstudio.api import BUILTIN_TASKS as _BUILTIN_TASK_TRAITS

BERT_TEXT_CLASSIFICATION = {'tlstudio_techniques': [{'id': 'bert-text-classification',
                                                     'title': 'Text classification (BERT)',
                                                     'task': 'text-classification'}]}
BUILTIN_EXPORTERS = {'tlstudio_exporters': [{'id': 'torchscript'}, {'id': 'onnx'}]}
BUILTIN_MODEL_SOURCES = {'tlstudio_model_sources': [{'id': 'user-folder'},
                                                    {'id': 'packages'},
                                                    {'id': 'torch-hub'},
                                                    {'id': 'huggingface'},
                                                    {'id': 'timm-local'}]}
BUILTIN_READERS = {'tlstudio_dataset_readers': [{'id': 'folder'}, {'id': 'csv'}, {'id': 'npz'}, {'id': 'dicom'}]}
BUILTIN_TASKS = {'tlstudio_tasks': [t.manifest() for t in _BUILTIN_TASK_TRAITS]}
CAPTION_READERS = {'tlstudio_dataset_readers': [{'id': 'coco-captions'}, {'id': 'captions-csv'}]}
CAPTIONING = {'tlstudio_techniques': [{'id': 'captioning',
                                       'title': 'Image captioning (CNN + LSTM)',
                                       'task': 'captioning'}]}
DANN = {'tlstudio_techniques': [{'id': 'dann',
                                 'title': 'Domain-adversarial training (DANN)',
                                 'task': 'image-classification'}]}
DETECTION_READERS = {'tlstudio_dataset_readers': [{'id': 'coco'}, {'id': 'voc'}, {'id': 'boxes-csv'}]}
EWC = {'tlstudio_techniques': [{'id': 'ewc',
                                'title': 'Elastic weight consolidation (EWC)',
                                'task': 'image-classification'}]}
FASTER_RCNN = {'tlstudio_techniques': [{'id': 'faster-rcnn', 'title': 'Faster R-CNN', 'task': 'detection'}]}
FINE_TUNING = {'tlstudio_techniques': [{'id': 'fine-tuning', 'title': 'Fine-tuning', 'task': 'image-classification'}]}
FROZEN_FEATURES = {'tlstudio_techniques': [{'id': 'frozen-features',
                                            'title': 'Frozen feature extraction',
                                            'task': 'image-classification'}]}
PROGRESSIVE_UNFREEZING = {'tlstudio_techniques': [{'id': 'progressive-unfreezing',
                                                   'title': 'Progressive unfreezing',
                                                   'task': 'image-classification'}]}
TEXT_READERS = {'tlstudio_dataset_readers': [{'id': 'text-jsonl'}, {'id': 'text-csv'}, {'id': 'text-uci'}]}
