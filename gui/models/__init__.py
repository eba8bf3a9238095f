"""Qt item models: categories, images, forgetting history and the AP table."""

from .ap_table_model import APTableModel
from .category_model import CategoryModel
from .history_model import HistoryModel
from .image_model import ImageEntry, ImageListModel

__all__ = ["APTableModel", "CategoryModel", "HistoryModel", "ImageEntry", "ImageListModel"]
