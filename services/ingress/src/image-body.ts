/** The content types an `image` route body may have: each is read raw and sent on as the image's bytes. */
export const IMAGE_CONTENT_TYPES: readonly string[] = [
  "image/jpeg",
  "image/png",
  "image/webp",
  "image/gif",
  "image/avif",
  "image/tiff",
  "image/*",
  "application/octet-stream",
];
