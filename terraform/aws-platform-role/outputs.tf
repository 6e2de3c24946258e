output "role_arn" {
  description = "The platform principal: set it as the root stack's aws_platform_role_arn (AWS_PLATFORM_ROLE_ARN)."
  value       = aws_iam_role.platform.arn
}
