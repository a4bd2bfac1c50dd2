/* xml_types.h - HL7 v2.5.1 data types of the common segments' fields and of
 * the composite types' components, for the element names of the v2 XML
 * encoding (<PID.3><CX.1>, <CX.4><HD.1>). */
#ifndef CAD_XML_TYPES_H
#define CAD_XML_TYPES_H

#include <stdbool.h>

/* The comma-separated types of segment seg's fields, field 1 first ("SI,
 * CX,..."; an empty one: not known, as for a "varies" field), or NULL when
 * the table has no row (a Z segment). */
const char *cad__xml_seg_types(const char *seg);
/* For components 0..n-1 of composite type `type`: out[k] is the data type
 * of component k when it has subcomponents of its own ("HD" for CX.4),
 * else NULL. */
void cad__xml_comp_types(const char *type, const char **out, int n);
/* A type name this table knows (for OBX-2), and its canonical spelling. */
bool cad__xml_is_type(const char *name);
/* ST, ID, NM, DTM, ...: a type without components. */
bool cad__xml_is_primitive(const char *type);
const char *cad__xml_canon_type(const char *name);

#endif
