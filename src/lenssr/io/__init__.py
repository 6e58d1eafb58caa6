"""Reading and writing single images and walking files, folders and zip archives."""

from lenssr.io.batch import (
    BatchReport,
    InputItem,
    ZipEntry,
    ZipLimits,
    check_zip_infos,
    iter_inputs,
    process_path,
    sanitize_member_name,
    zip_entries,
)
from lenssr.io.images import (
    EXTENSIONS,
    LoadedImage,
    encode_image,
    image_format,
    is_image_name,
    read_image,
    rescale_fits_header,
    write_image,
)

__all__ = [
    "EXTENSIONS",
    "BatchReport",
    "InputItem",
    "LoadedImage",
    "ZipEntry",
    "ZipLimits",
    "check_zip_infos",
    "encode_image",
    "image_format",
    "is_image_name",
    "iter_inputs",
    "process_path",
    "read_image",
    "rescale_fits_header",
    "sanitize_member_name",
    "write_image",
    "zip_entries",
]
