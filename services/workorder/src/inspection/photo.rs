//! What an uploaded inspection photo must be, and what is kept of it.
//!
//! A photo is decoded in full, so a file that only looks like an image (a renamed PDF, a
//! truncated upload) is refused with the reason. What is stored is a new JPEG made from the
//! pixels: turned upright by the original's EXIF orientation (phones store sensor pixels plus
//! a tag), scaled to fit [`MAX_SIDE`], and written without any of the original's metadata:
//! no location, camera or time reaches the customer's page. Re-encoding rather than cutting
//! metadata segments out also keeps a 5 MB phone photo from becoming 5 MB on every approval
//! page that shows it.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

pub const MAX_UPLOAD_BYTES: usize = carerp_kit::MAX_PHOTO_BYTES;
/// The longest side of a stored photo, in pixels: sharp on a phone and a desktop screen.
pub const MAX_SIDE: u32 = 1600;
/// Decoding a 12,000 × 12,000 image takes about 550 MB; a tiny file may claim more, and is
/// refused before any pixel is allocated.
const MAX_DIMENSION: u32 = 12_000;
const MAX_DECODE_BYTES: u64 = 600 * 1024 * 1024;
const JPEG_QUALITY: u8 = 82;
pub const CONTENT_TYPE: &str = "image/jpeg";

/// A photo as kept: JPEG bytes and their size in pixels.
#[derive(Debug, Clone)]
pub struct StoredPhoto {
    pub content: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhotoError {
    #[error("the photo is empty")]
    Empty,
    #[error("the photo is {size} bytes; the most taken is {max} bytes (10 MiB)")]
    TooLarge { size: usize, max: usize },
    #[error("the file is not a JPEG, PNG or WebP image")]
    NotAnImage,
    #[error("{0} images are not taken: send a JPEG, PNG or WebP photo")]
    Unsupported(&'static str),
    #[error("the image is larger than {max} pixels on a side, or too large to decode")]
    TooManyPixels { max: u32 },
    #[error("the image cannot be read: {0}")]
    Unreadable(String),
    #[error("the JPEG is cut off (its end marker is missing): send the photo again")]
    Truncated,
}

/// Checks an upload and makes the photo that is kept of it. CPU-bound (a 12 MP JPEG takes
/// a few hundred milliseconds): run it off the async workers.
pub fn prepare(upload: &[u8]) -> Result<StoredPhoto, PhotoError> {
    if upload.is_empty() {
        return Err(PhotoError::Empty);
    }
    if upload.len() > MAX_UPLOAD_BYTES {
        return Err(PhotoError::TooLarge {
            size: upload.len(),
            max: MAX_UPLOAD_BYTES,
        });
    }
    // The content decides, never a file name or a declared type.
    let format = image::guess_format(upload).map_err(|_| PhotoError::NotAnImage)?;
    match format {
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP => {}
        other => {
            return Err(PhotoError::Unsupported(
                other.extensions_str().first().copied().unwrap_or("these"),
            ));
        }
    }
    // The JPEG decoder fills a cut-off image with grey rather than failing: an upload broken
    // off on a weak connection must be refused, not kept half grey.
    if format == ImageFormat::Jpeg && !jpeg_is_complete(upload) {
        return Err(PhotoError::Truncated);
    }
    let mut reader = ImageReader::with_format(Cursor::new(upload), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(unreadable)?;
    let (width, height) = decoder.dimensions();
    if width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(PhotoError::TooManyPixels { max: MAX_DIMENSION });
    }
    // A damaged orientation tag is no reason to refuse the pixels.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut pixels = DynamicImage::from_decoder(decoder).map_err(unreadable)?;
    pixels.apply_orientation(orientation);
    if pixels.width() > MAX_SIDE || pixels.height() > MAX_SIDE {
        pixels = pixels.resize(MAX_SIDE, MAX_SIDE, FilterType::Triangle);
    }
    let rgb = pixels.to_rgb8();
    let mut content = Vec::new();
    JpegEncoder::new_with_quality(&mut content, JPEG_QUALITY)
        .encode_image(&rgb)
        .map_err(unreadable)?;
    Ok(StoredPhoto {
        content,
        width: rgb.width(),
        height: rgb.height(),
    })
}

/// Whether the scan of the (first) image ends with its end-of-image marker. Metadata before
/// the scan may hold a thumbnail with its own markers, and cameras may append more images
/// after it, so the marker is looked for after the first start-of-scan.
fn jpeg_is_complete(jpeg: &[u8]) -> bool {
    const START_OF_SCAN: [u8; 2] = [0xFF, 0xDA];
    const END_OF_IMAGE: [u8; 2] = [0xFF, 0xD9];
    let Some(scan) = jpeg.windows(2).position(|w| w == START_OF_SCAN) else {
        return false;
    };
    jpeg[scan..].windows(2).any(|w| w == END_OF_IMAGE)
}

fn unreadable(err: image::ImageError) -> PhotoError {
    match err {
        image::ImageError::Limits(_) => PhotoError::TooManyPixels { max: MAX_DIMENSION },
        other => PhotoError::Unreadable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use image::codecs::png::PngEncoder;
    use image::{ImageEncoder, Rgb, RgbImage};

    use super::*;

    /// A JPEG whose EXIF says "rotate 90°" and carries a marker standing for a location.
    fn phone_jpeg(width: u32, height: u32) -> Vec<u8> {
        let pixels = RgbImage::from_fn(width, height, |x, _| Rgb([(x % 256) as u8, 90, 160]));
        let mut jpeg = Vec::new();
        let mut encoder = JpegEncoder::new(&mut jpeg);
        // Little-endian TIFF header, one IFD entry: orientation (0x0112) = 6 (rotate 90°),
        // then the marker as trailing bytes of the segment.
        let mut exif = b"II\x2a\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00".to_vec();
        exif.extend_from_slice(b"GPS 48.8584N 2.2945E");
        encoder.set_exif_metadata(exif).expect("exif");
        encoder.encode_image(&pixels).expect("encode");
        jpeg
    }

    #[test]
    fn a_phone_photo_is_kept_upright_scaled_and_without_its_metadata() {
        let upload = phone_jpeg(2000, 1000);
        assert!(upload.windows(3).any(|w| w == b"GPS"));
        let stored = prepare(&upload).expect("a valid photo");
        // Rotated by its orientation, then scaled to fit 1600 px.
        assert_eq!((stored.width, stored.height), (800, 1600));
        assert!(!stored.content.windows(3).any(|w| w == b"GPS"));
        assert!(!stored.content.windows(4).any(|w| w == b"Exif"));
        let decoded = image::load_from_memory(&stored.content).expect("stored JPEG decodes");
        assert_eq!((decoded.width(), decoded.height()), (800, 1600));
    }

    #[test]
    fn png_and_small_photos_are_kept_at_their_size_as_jpeg() {
        let mut png = Vec::new();
        PngEncoder::new(&mut png)
            .write_image(
                &[200u8; 30 * 20 * 3],
                30,
                20,
                image::ExtendedColorType::Rgb8,
            )
            .expect("png");
        let stored = prepare(&png).expect("a valid PNG");
        assert_eq!((stored.width, stored.height), (30, 20));
        assert_eq!(
            image::guess_format(&stored.content).ok(),
            Some(ImageFormat::Jpeg)
        );
    }

    #[test]
    fn what_is_not_a_whole_image_is_refused_with_the_reason() {
        assert_eq!(prepare(b"").unwrap_err(), PhotoError::Empty);
        assert_eq!(
            prepare(b"%PDF-1.7 not a photo").unwrap_err(),
            PhotoError::NotAnImage
        );
        assert_eq!(
            prepare(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap_err(),
            PhotoError::Unsupported("gif")
        );
        let mut truncated = phone_jpeg(64, 64);
        truncated.truncate(truncated.len() / 2);
        assert_eq!(prepare(&truncated).unwrap_err(), PhotoError::Truncated);
        let mut png = Vec::new();
        PngEncoder::new(&mut png)
            .write_image(&[7u8; 64 * 64 * 3], 64, 64, image::ExtendedColorType::Rgb8)
            .expect("png");
        png.truncate(png.len() - 20);
        assert!(matches!(
            prepare(&png).unwrap_err(),
            PhotoError::Unreadable(_)
        ));
        let big = vec![0xFFu8; MAX_UPLOAD_BYTES + 1];
        assert_eq!(
            prepare(&big).unwrap_err(),
            PhotoError::TooLarge {
                size: MAX_UPLOAD_BYTES + 1,
                max: MAX_UPLOAD_BYTES
            }
        );
    }

    #[test]
    fn an_image_too_wide_is_refused_before_its_pixels_are_decoded() {
        // 13,000 × 1 pixels compress to a few hundred bytes.
        let mut png = Vec::new();
        PngEncoder::new(&mut png)
            .write_image(
                &vec![0u8; 13_000 * 3],
                13_000,
                1,
                image::ExtendedColorType::Rgb8,
            )
            .expect("png");
        assert!(png.len() < 4_096);
        assert!(matches!(
            prepare(&png).unwrap_err(),
            PhotoError::TooManyPixels { max: MAX_DIMENSION }
        ));
    }
}
